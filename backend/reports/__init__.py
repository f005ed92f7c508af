"""Reports: queries over the rollups and raw rows, and the server-rendered pages."""
