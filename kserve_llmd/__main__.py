from kserve_llmd.cli import main

raise SystemExit(main())
