from toolkit.cli import app

app()
