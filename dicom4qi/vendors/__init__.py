"""Vendors: the bundle sent out, the submissions taken in (untrusted), the kit a vendor runs."""
