"""Small SQLAlchemy 2 storage layer shared by the service (CDS feedback, seen JWT ids) and, later,
the registry.

Why a database at all: CDS Hooks feedback must survive restarts and be queryable later, and JWT
replay protection must hold across the several uvicorn worker processes a production server runs,
which an in-process set cannot do.

The schema is created by Alembic migrations shipped in the package (``ipexrx/storage/migrations``),
so an existing database is upgraded in place rather than recreated. The default database is SQLite
in the user data directory; ``$IPEXRX_DATABASE_URL`` selects another (any SQLAlchemy URL).
"""

from __future__ import annotations

from .db import ENV_DATABASE_URL, Database, default_database_url, user_data_dir
from .models import Base, CdsCard, CdsFeedback, SavedAssessment, SeenToken

__all__ = [
    "ENV_DATABASE_URL",
    "Base",
    "CdsCard",
    "CdsFeedback",
    "Database",
    "SavedAssessment",
    "SeenToken",
    "default_database_url",
    "user_data_dir",
]
