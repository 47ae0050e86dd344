using System.CommandLine;
using Tp7.Cli;
using Tp7.Cli.Commands;

var root = new RootCommand("tp7: transfer learning with VGG16 on our own kernels (CUDA, OpenCL, SIMD host)");
root.Options.Add(CliCommon.Verbose);
foreach (var command in new[]
{
    DevicesCommand.Create(), InfoCommand.Create(),
})
    root.Subcommands.Add(command);
return root.Parse(args).Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
