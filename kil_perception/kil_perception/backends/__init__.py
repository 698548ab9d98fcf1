"""Dense feature backends behind one interface (``FeatureBackend``); ``make_backend`` builds one
by name. Backends that need downloaded weights fail with a message naming the model id and how
to give a local path; ``effnet_lite0`` and ``classic`` work offline."""

from kil_perception.backends.base import BACKENDS, FeatureBackend, WeightsUnavailableError, make_backend

__all__ = ["BACKENDS", "FeatureBackend", "WeightsUnavailableError", "make_backend"]
