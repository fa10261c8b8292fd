from acetate.cli import main

raise SystemExit(main())
