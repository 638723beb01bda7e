from playbookd.cli.commands import main

main()
