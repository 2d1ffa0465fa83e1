from medinfer.cli import main

raise SystemExit(main())
