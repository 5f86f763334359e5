from byom_cli.app import main

main()
