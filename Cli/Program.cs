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
    BenchCommand.Create(), ExtractCommand.Create(), MergeCommand.Create(), SvmCommand.Create(), RunCommand.Create(), SweepCommand.Create(),
    SelfTestCommand.Create(), FinetuneCommand.Create(), ProfileCommand.Create(),
})
    root.Subcommands.Add(command);
var parse = root.Parse(args);
// A bad option value fails here, before any work, one line per problem; the help page stays behind --help.
if (parse.Errors.Count > 0)
{
    foreach (var line in OptionChecks.ErrorLines(parse)) Console.Error.WriteLine(line);
    Console.Error.WriteLine($"(see '{OptionChecks.VerbPath(parse.CommandResult)} --help')");
    return 2;
}
return parse.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
