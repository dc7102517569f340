from kodev.terraform.provider import main

raise SystemExit(main())
