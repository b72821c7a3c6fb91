from venvlayers.cli.commands import main

raise SystemExit(main())
