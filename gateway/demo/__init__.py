"""Synthetic demonstration data and the demo registries that serve it.

Nothing here describes a real person or company. The data set is generated
deterministically from a seed (``gateway.demo.data``) and served over real
sockets by stand-ins for the population, business and tax registries
(``gateway.demo.registries``).
"""
