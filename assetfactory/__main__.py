from assetfactory.cli import app

app()
