"""One module per subcommand: parse options, call a library function, print the result."""
