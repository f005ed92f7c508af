"""Stores (Stripe, Shopify) as conversion sources, customers bound to partners, renewals."""
