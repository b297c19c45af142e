from steelflow.cli import main

main()
