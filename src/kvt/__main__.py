from kvt.cli import main

raise SystemExit(main())
