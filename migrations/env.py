"""Alembic environment: thin on purpose; app.runtime does the work."""
from alembic import context

from app.runtime import run_env

run_env(context)
