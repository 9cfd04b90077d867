"""The runtime model: load an artifact and advance per-engine recurrent state in NumPy.

Never imports TensorFlow or Keras, directly or indirectly: ``vibewatch serve`` stays lean.
"""

from service.model.manifest import Architecture
from service.model.streaming import StreamingModel, load_streaming_model

__all__ = ["Architecture", "StreamingModel", "load_streaming_model"]
