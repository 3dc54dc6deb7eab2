"""The part of imp_keras that knows no Keras: plans, selection, the schedules' closed forms, the
callback's decisions, the invariants and the sparsity report, on ints and NumPy arrays.

Both flavours (`imp_keras.tf_keras`, `imp_keras.keras3`) build on it; importing it imports
neither Keras nor TensorFlow.
"""
