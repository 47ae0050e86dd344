using System.CommandLine;
using Tp7.Cli;
using Tp7.Cli.Commands;

// Tables keep their shape when stdout is a file or a pipe (CI logs, `| less`).
if (Console.IsOutputRedirected) Spectre.Console.AnsiConsole.Console.Profile.Width = 160;

var root = new RootCommand("tp7: transfer learning with VGG16 on our own kernels (CUDA, OpenCL, SIMD host)");
root.Options.Add(CliCommon.Verbose);
foreach (var command in new[]
{
    DevicesCommand.Create(), InfoCommand.Create(), ClassifyCommand.Create(), FeatureMapsCommand.Create(),
    BenchCommand.Create(), ExtractCommand.Create(), SvmCommand.Create(), RunCommand.Create(),
    SelfTestCommand.Create(), FinetuneCommand.Create(),
})
    root.Subcommands.Add(command);
return root.Parse(args).Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
