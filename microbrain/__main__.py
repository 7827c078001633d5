from microbrain.cli import main

main()
