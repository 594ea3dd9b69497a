"""Warehouse connectors for pricing_lab. Each connector is one sub-package; drivers load lazily."""
