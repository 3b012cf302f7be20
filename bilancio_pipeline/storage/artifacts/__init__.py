"""Run artifacts on a local volume folder or Cloudflare R2, one key layout for both."""
