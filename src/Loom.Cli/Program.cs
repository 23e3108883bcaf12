using Loom.Cli;

return LoomApp.Run(args);
