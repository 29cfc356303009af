from rxsm.cli import main

main()
