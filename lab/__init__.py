"""The strategy lab: what-if simulation of strategies on the real case workflow (``python -m lab``)."""
