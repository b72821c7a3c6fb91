from venvlayers.cli import main

raise SystemExit(main())
