"""C{python -m chatroute.client}."""

from chatroute.client.main import main

main()
