"""HTTP: the GitHub API client, downloads with resume and the sha256 cache, retries, deadlines."""
