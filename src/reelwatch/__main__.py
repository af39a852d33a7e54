from reelwatch.cli import main

main()
