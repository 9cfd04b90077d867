"""Training, evaluation and artifacts of vibewatch's forecasting model.

Never imports ``service``: training and the runtime share only the artifact format
(``docs/model.md``). TensorFlow and Keras are imported inside functions, not at module level.
"""
