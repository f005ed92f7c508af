"""The bottom layer: settings, ids, time, money, logs, the viewer and field errors.

Imports nothing else of Clicktrail; every other layer may import it.
"""
