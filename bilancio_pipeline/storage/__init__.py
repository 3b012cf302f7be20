"""Where results are kept: the table stores (SQLite, Postgres, Supabase REST) and artifacts."""
