"""stub"""
from .space import NotApplicable
class FallbackRule:
    name = "fallback"
    knobs = {}
    def __init__(self, func, info, num_cores):
        if "fallback" != "fallback":
            raise NotApplicable("stub")
    def default_values(self): return {}
    def check(self, values): pass
    def schedule(self, sch, values): pass
