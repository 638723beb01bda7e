from playbookd.cli import main

main()
