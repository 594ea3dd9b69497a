"""Simulation: customer inputs, costing events with the catalog, replay outputs, scenarios."""
