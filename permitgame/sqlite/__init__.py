"""The embedded database: Django's SQLite backend without DEBUG's query log (see ``base``)."""
