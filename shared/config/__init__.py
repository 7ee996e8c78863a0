"""What the app is told: every setting (settings.py, validated once at start-up), the credentials those
settings name (credentials.py), and the feed table (feeds.py), where everything that differs between feeds
is declared."""
