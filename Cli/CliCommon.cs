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

    /// <summary>What every verb's help says of the weights lookup (<see cref="Tp7.Engine.Model.WeightsLocator.Locate"/>).</summary>
    public const string WeightsLookup =
        "default: $TP7_WEIGHTS (a file, or a folder), else weights/ of the repository, else $TP7_CACHE/weights or ~/.cache/tp7/weights " +
        "(vgg16.safetensors before vgg16-random-seed0.safetensors), else random init in memory";

    public static Option<string?> Weights(string description = "VGG16 weights (safetensors, torchvision keys); " + WeightsLookup)
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
    public readonly Option<string> Precision = PrecisionOption.Create();

    public DeviceOptions(Command command)
    {
        Device.AcceptOnlyFromAmong(Tp7.Engine.Devices.DeviceCatalog.Choices);
        command.Options.Add(Device);
        command.Options.Add(Index);
        command.Options.Add(Precision);
        PrecisionOption.AddChecks(command, Precision, Device);
    }

    /// <summary>Open ILGPU devices with profiling (device events for the kernel profiler).</summary>
    public bool Profiling { get; set; }

    /// <summary>--precision, checked while parsing.</summary>
    public Tp7.Engine.Kernels.Precision PrecisionOf(ParseResult parse) => Tp7.Engine.Kernels.Precisions.Parse(parse.GetValue(Precision) ?? "fp32")!.Value;

    /// <summary>Refuses a --precision the device --device would open cannot compute in, before any work (see <see cref="PrecisionOption"/>).</summary>
    public void CheckPrecision(ParseResult parse)
    {
        string d = parse.GetValue(Device)!;
        if (d is "auto" or "cuda") PrecisionOption.CheckCudaDevice(PrecisionOf(parse), d, parse.GetValue(Index));
    }

    /// <summary>Opens the device and sets its --precision; the line saying which one (and why) goes to stderr so stdout stays parseable.</summary>
    public Tp7.Engine.Devices.ComputeDevice Open(ParseResult parse)
    {
        CheckPrecision(parse);
        var dev = Tp7.Engine.Devices.DeviceCatalog.Open(parse.GetValue(Device)!, parse.GetValue(Index), line => Console.Error.WriteLine(line), Profiling);
        try { dev.Precision = PrecisionOf(parse); }
        catch (NotSupportedException e)
        {
            dev.Dispose();
            throw new ArgumentException(e.Message, e);
        }
        return dev;
    }
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
    public readonly Option<int?> PerClass = new Option<int?>("--train-per-class") { Description = "Split --data: this many training images per class, the rest for testing (15-Scene: 100)" }.AtLeast(1);
    public readonly Option<int> Seed;

    public DatasetOptions(Command command, string seedDescription)
    {
        Seed = new("--seed") { Description = seedDescription, DefaultValueFactory = _ => 0 };
        foreach (var o in new Option[] { Data, Train, Test, PerClass, Seed }) command.Options.Add(o);
    }

    /// <summary>How the options combine, and that the folders they name exist: checked before any model or file is read.</summary>
    public void Check(ParseResult parse)
    {
        string? train = parse.GetValue(Train), test = parse.GetValue(Test), data = parse.GetValue(Data);
        if (train != null && test == null) throw new ArgumentException("--train needs --test");
        if (test != null && train == null) throw new ArgumentException("--test needs --train");
        if (train != null && data != null) throw new ArgumentException("--data does not go with --train and --test: give one or the other");
        if (train != null && parse.GetValue(PerClass) != null)
            throw new ArgumentException("--train-per-class splits --data; --train and --test are already split");
        foreach (var (option, folder) in new[] { ("--data", data), ("--train", train), ("--test", test) })
            if (folder != null && !Directory.Exists(folder))
                throw new DirectoryNotFoundException(File.Exists(folder) ? $"{option} {folder}: a file, not a folder of class folders" : $"{option} {folder}: no such folder");
        if (data == null && train == null) FindDemo();
    }

    /// <summary>Opens the dataset and prints its one-line summary and any empty class folders.</summary>
    public Tp7.Engine.Data.Dataset Open(ParseResult parse)
    {
        Check(parse);
        Tp7.Engine.Data.Dataset ds;
        if (parse.GetValue(Train) is { } tr)
            ds = Tp7.Engine.Data.DatasetLoader.Open(tr, parse.GetValue(Test)!);
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
