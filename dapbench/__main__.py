from dapbench.cli import main

raise SystemExit(main())
