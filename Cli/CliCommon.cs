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
                else Console.Error.WriteLine($"{OptionChecks.VerbPath(parse.CommandResult)}: {OneLine(e)}");
                return 1;
            }
        });

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

/// <summary>
/// Where a dataset comes from, on every verb that trains: --data (train/ + test/, or class folders split with
/// --train-per-class and --seed; default the committed demo set), or --train with --test.
/// </summary>
sealed class DatasetOptions
{
    public readonly Option<string?> Data = new("--data") { Description = "Dataset folder (train/ + test/, or class folders with --train-per-class); default: the committed demo set" };
    public readonly Option<string?> Train = new("--train") { Description = "Training folder of class folders" };
    public readonly Option<string?> Test = new("--test") { Description = "Test folder of class folders" };
    public readonly Option<int?> PerClass = new("--train-per-class") { Description = "Split --data: this many training images per class, the rest for testing (15-Scene: 100)" };
    public readonly Option<int> Seed;

    public DatasetOptions(Command command, string seedDescription)
    {
        Seed = new("--seed") { Description = seedDescription, DefaultValueFactory = _ => 0 };
        foreach (var o in new Option[] { Data, Train, Test, PerClass, Seed }) command.Options.Add(o);
    }

    /// <summary>Opens the dataset and prints its one-line summary and any empty class folders.</summary>
    public Tp7.Engine.Data.Dataset Open(ParseResult parse)
    {
        Tp7.Engine.Data.Dataset ds;
        if (parse.GetValue(Train) is { } tr)
            ds = Tp7.Engine.Data.DatasetLoader.Open(tr, parse.GetValue(Test) ?? throw new ArgumentException("--train needs --test"));
        else
            ds = Tp7.Engine.Data.DatasetLoader.Open(parse.GetValue(Data) ?? FindDemo(), parse.GetValue(PerClass), parse.GetValue(Seed));
        Console.WriteLine($"data: {ds.Root} ({ds.Layout}): {ds.Classes.Count} classes, {ds.Train.Count} train, {ds.Test.Count} test images");
        foreach (var empty in ds.EmptyClassFolders) Console.Error.WriteLine($"warning: class folder without images ignored: {empty}");
        return ds;
    }

    /// <summary>The committed demo set: ./data/demo, else data/demo in the repository above the program.</summary>
    public static string FindDemo()
        => Tp7.Engine.Model.WeightsLocator.LocalFolders(Path.Combine("data", "demo")).FirstOrDefault(Directory.Exists)
           ?? throw new DirectoryNotFoundException("no --data given and the demo set data/demo was not found (run from the repository)");
}
