"""Clicktrail: affiliate click and conversion tracking."""
