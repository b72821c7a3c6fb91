from venvlayers.cli.replay import main

raise SystemExit(main())
