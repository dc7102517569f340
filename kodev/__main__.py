from kodev.cli import main

raise SystemExit(main())
