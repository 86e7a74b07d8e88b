from instructkit.cli.main import main

main()
