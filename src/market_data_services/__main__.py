import sys

from market_data_services.app.cli import main

sys.exit(main())
