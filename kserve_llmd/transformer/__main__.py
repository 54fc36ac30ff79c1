from kserve_llmd.transformer.server import main

raise SystemExit(main())
