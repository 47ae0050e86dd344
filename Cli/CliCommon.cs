using System.CommandLine;

namespace Tp7.Cli;

/// <summary>Options shared by verbs, and the one place where exceptions become one-line errors.</summary>
static class CliCommon
{
    public static readonly Option<bool> Verbose = new("--verbose", "-v")
    {
        Description = "Print stack traces and extra diagnostics",
        Recursive = true,
    };

    public static Option<string?> Weights(string description = "VGG16 weights (safetensors, torchvision keys); default: weights/vgg16.safetensors, else weights/vgg16-random-seed0.safetensors")
        => new("--weights") { Description = description };

    /// <summary>Runs a verb body; a failure becomes "tp7: message" on stderr and exit code 1 (a stack trace with --verbose).</summary>
    public static void SetHandler(this Command command, Func<ParseResult, int> body)
        => command.SetAction(parse =>
        {
            try
            {
                return body(parse);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                if (parse.GetValue(Verbose)) Console.Error.WriteLine(e);
                else Console.Error.WriteLine($"{VerbPath(parse)}: {OneLine(e)}");
                return 1;
            }
        });

    /// <summary>"tp7 svm eval" for a nested verb: the names from the root down to the verb that ran.</summary>
    static string VerbPath(ParseResult parse)
    {
        var names = new List<string>();
        for (var r = parse.CommandResult; r != null; r = r.Parent as System.CommandLine.Parsing.CommandResult)
            names.Insert(0, r.Command.Name);
        if (names.Count > 0) names[0] = "tp7";
        return string.Join(' ', names);
    }

    static string OneLine(Exception e)
    {
        var inner = e is AggregateException { InnerExceptions.Count: 1 } a ? a.InnerExceptions[0] : e;
        return inner.Message.ReplaceLineEndings(" ");
    }
}

/// <summary>--device and --device-index, on every verb that computes.</summary>
sealed class DeviceOptions
{
    public readonly Option<string> Device = new("--device")
    {
        Description = "auto (CUDA, then an OpenCL GPU, then the host), cuda, opencl, cpu (SIMD host backend), ilgpu-cpu (kernel debugger)",
        DefaultValueFactory = _ => "auto",
    };
    public readonly Option<int> Index = new("--device-index") { Description = "Which device of that kind", DefaultValueFactory = _ => 0 };

    public DeviceOptions(Command command)
    {
        Device.AcceptOnlyFromAmong(Tp7.Engine.Devices.DeviceCatalog.Choices);
        command.Options.Add(Device);
        command.Options.Add(Index);
    }

    /// <summary>Opens the device; the line saying which one (and why) goes to stderr so stdout stays parseable.</summary>
    public Tp7.Engine.Devices.ComputeDevice Open(ParseResult parse)
        => Tp7.Engine.Devices.DeviceCatalog.Open(parse.GetValue(Device)!, parse.GetValue(Index), line => Console.Error.WriteLine(line));
}
