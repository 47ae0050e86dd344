using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Tp7.Tests.Infrastructure;

/// <summary>What one `tp7` invocation did.</summary>
public sealed record CliResult(string[] Args, int ExitCode, string Stdout, string Stderr, TimeSpan Elapsed)
{
    /// <summary>Non-empty stderr lines (the CLI's progress line ends its redraws with '\r', so those split too).</summary>
    public string[] StderrLines => Stderr.Split(['\n', '\r'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    /// <summary>Everything a failing assertion needs to show what happened.</summary>
    public override string ToString() =>
        $"tp7 {string.Join(' ', Args)}\nexit {ExitCode} after {Elapsed.TotalSeconds:F1} s\n--- stdout ---\n{Stdout}\n--- stderr ---\n{Stderr}";
}

/// <summary>
/// Runs the built `tp7` (the Cli project's output, copied beside the test binaries by the project reference) as a
/// separate process, as a user would: real exit code, real stdout/stderr, the process's own console and environment.
/// In-process would share Console.Out, the current directory and environment variables (TP7_CACHE) with tests that
/// xunit runs in parallel.
/// </summary>
public static class CliRunner
{
    /// <summary>The apphost where the SDK made one, else tp7.dll (run with the `dotnet` that runs the tests).</summary>
    static (string FileName, string[] Prefix) Command(string? programDir)
    {
        string dir = programDir ?? AppContext.BaseDirectory;
        string apphost = Path.Combine(dir, OperatingSystem.IsWindows() ? "tp7.exe" : "tp7");
        if (File.Exists(apphost)) return (apphost, []);
        string dll = Path.Combine(dir, "tp7.dll");
        if (!File.Exists(dll)) throw new FileNotFoundException($"{dll}: the CLI is not built beside the tests (Tests.csproj references Cli.csproj; rebuild Tests)");
        string dotnet = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet";
        return (dotnet, [dll]);
    }

    /// <summary>
    /// Runs `tp7 ARGS` in <paramref name="workingDir"/>. The feature cache goes to <paramref name="cacheDir"/>
    /// (TP7_CACHE) so a test never reads or fills the user's ~/.cache/tp7 (features or weights); by default a folder
    /// inside the working directory, i.e. a fresh, empty cache. TP7_WEIGHTS is removed unless
    /// <paramref name="environment"/> sets it; there a null value removes a variable (e.g. a scheduler's
    /// JOB_COMPLETION_INDEX is set there). <paramref name="programDir"/> runs a tp7 copied elsewhere (e.g. outside the
    /// repository) instead of the one beside the tests.
    /// </summary>
    public static CliResult Run(string workingDir, string[] args, string? cacheDir = null, TimeSpan? timeout = null,
        IReadOnlyDictionary<string, string?>? environment = null, string? programDir = null)
    {
        using var running = Start(workingDir, args, cacheDir, environment, programDir);
        return running.WaitForExit(timeout ?? TimeSpan.FromMinutes(5));
    }

    /// <summary>Starts `tp7 ARGS` as <see cref="Run"/> does, for a test that acts while it runs (e.g. sends it a signal).</summary>
    public static RunningCli Start(string workingDir, string[] args, string? cacheDir = null, IReadOnlyDictionary<string, string?>? environment = null,
        string? programDir = null)
    {
        var (fileName, prefix) = Command(programDir);
        var psi = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = workingDir,
        };
        foreach (var a in prefix) psi.ArgumentList.Add(a);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["TP7_CACHE"] = cacheDir ?? Path.Combine(workingDir, "tp7-cache");
        psi.Environment.Remove("TP7_WEIGHTS");
        foreach (var (name, value) in environment ?? new Dictionary<string, string?>())
            if (value == null) psi.Environment.Remove(name);
            else psi.Environment[name] = value;
        return new RunningCli(args, Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {fileName}"));
    }

    /// <summary>Runs and asserts exit code 0, showing the whole invocation when it is not.</summary>
    public static CliResult RunOk(string workingDir, string[] args, string? cacheDir = null, TimeSpan? timeout = null,
        IReadOnlyDictionary<string, string?>? environment = null, string? programDir = null)
    {
        var r = Run(workingDir, args, cacheDir, timeout, environment, programDir);
        Assert.True(r.ExitCode == 0, r.ToString());
        return r;
    }
}

/// <summary>A `tp7` process started by <see cref="CliRunner.Start"/>: its stderr lines as they come, signals, its result.</summary>
public sealed class RunningCli : IDisposable
{
    readonly string[] args;
    readonly Process process;
    readonly Stopwatch clock = Stopwatch.StartNew();
    readonly Task<string> stdout;
    readonly System.Text.StringBuilder stderr = new();
    // A thread of its own and a blocking queue: under a loaded test run the thread pool can starve for seconds, and a
    // test that reacts to a line (a signal mid-extraction) must see it while the process is still at that point.
    readonly System.Collections.Concurrent.BlockingCollection<string> stderrLines = new();
    readonly Thread stderrPump;

    internal RunningCli(string[] args, Process process)
    {
        this.args = args;
        this.process = process;
        stdout = process.StandardOutput.ReadToEndAsync();
        stderrPump = new Thread(() =>
        {
            // Lines end at '\n' or at the progress line's '\r'.
            var line = new System.Text.StringBuilder();
            var buffer = new char[4096];
            int n;
            while ((n = process.StandardError.Read(buffer, 0, buffer.Length)) > 0)
                for (int i = 0; i < n; i++)
                {
                    lock (stderr) stderr.Append(buffer[i]);
                    if (buffer[i] is '\n' or '\r') { if (line.Length > 0) stderrLines.Add(line.ToString()); line.Clear(); }
                    else line.Append(buffer[i]);
                }
            if (line.Length > 0) stderrLines.Add(line.ToString());
            stderrLines.CompleteAdding();
        }) { IsBackground = true, Name = "tp7 stderr" };
        stderrPump.Start();
    }

    public int Id => process.Id;

    /// <summary>The first stderr line from now on that <paramref name="match"/> accepts; fails with everything so far if the
    /// process ends first or <paramref name="limit"/> passes.</summary>
    public string WaitForStderrLine(Func<string, bool> match, TimeSpan limit)
    {
        using var cts = new CancellationTokenSource(limit);
        try
        {
            foreach (var line in stderrLines.GetConsumingEnumerable(cts.Token))
                if (match(line)) return line;
        }
        catch (OperationCanceledException) { }
        string seen;
        lock (stderr) seen = stderr.ToString();
        throw new Xunit.Sdk.XunitException($"tp7 {string.Join(' ', args)}: no matching stderr line {(process.HasExited ? $"before it exited ({process.ExitCode})" : $"within {limit.TotalSeconds:F0} s")}\n--- stderr ---\n{seen}");
    }

    /// <summary>Sends a POSIX signal (e.g. 2, SIGINT: what Ctrl-C sends) to the process.</summary>
    public void Signal(int signal)
    {
        if (kill(process.Id, signal) != 0) throw new InvalidOperationException($"kill({process.Id}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");
    }

    [DllImport("libc", SetLastError = true)]
    static extern int kill(int pid, int sig);

    public CliResult WaitForExit(TimeSpan limit)
    {
        if (!process.WaitForExit(limit))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
            stderrPump.Join();
            throw new TimeoutException($"tp7 {string.Join(' ', args)}: still running after {limit.TotalSeconds:F0} s\n--- stdout ---\n{stdout.Result}\n--- stderr ---\n{stderr}");
        }
        process.WaitForExit(); // drains the redirected streams
        stderrPump.Join();
        return new CliResult(args, process.ExitCode, stdout.Result, stderr.ToString(), clock.Elapsed);
    }

    public void Dispose()
    {
        if (!process.HasExited) process.Kill(entireProcessTree: true);
        process.Dispose();
    }
}

/// <summary>The built CLI copied to a folder of one's choice, as a user installs it: outside the repository it finds no weights/ or data/ of a checkout.</summary>
public static class CliInstall
{
    /// <summary>Copies tp7 and its assemblies (and this platform's native libraries) from beside the tests into <paramref name="dir"/>.</summary>
    public static string CopyTo(string dir)
    {
        string from = AppContext.BaseDirectory;
        Directory.CreateDirectory(dir);
        var deps = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(from, "tp7.deps.json")))!;
        foreach (var file in Directory.GetFiles(from))
        {
            string name = Path.GetFileName(file);
            // The CLI's own files and every assembly its deps.json lists; the tests' assemblies stay behind.
            if (name.StartsWith("tp7", StringComparison.Ordinal) || name.EndsWith(".dll", StringComparison.Ordinal) && deps.ToJsonString().Contains(Path.GetFileNameWithoutExtension(name)))
                File.Copy(file, Path.Combine(dir, name));
        }
        string rid = Path.Combine(from, "runtimes", System.Runtime.InteropServices.RuntimeInformation.RuntimeIdentifier);
        if (Directory.Exists(rid)) CopyTree(rid, Path.Combine(dir, "runtimes", Path.GetFileName(rid)));
        return dir;
    }

    static void CopyTree(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from)) File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
        foreach (var d in Directory.GetDirectories(from)) CopyTree(d, Path.Combine(to, Path.GetFileName(d)));
    }
}

/// <summary>A fresh folder under the system temp folder, deleted (with everything in it) on dispose.</summary>
public sealed class ScratchDir(string prefix = "tp7-test") : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory(prefix + "-").FullName;

    public string this[string relative] => System.IO.Path.Combine(Path, relative);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}

/// <summary>Small datasets cut from the committed demo set (data/demo: Fashion-MNIST, 28x28 grayscale PNGs).</summary>
public static class DemoData
{
    public static string Root => Path.Combine(RepoPaths.Root, "data", "demo");

    /// <summary>
    /// Copies the first <paramref name="train"/> / <paramref name="test"/> files (ordinal order) of the first
    /// <paramref name="classes"/> classes into DIR/train/CLASS and DIR/test/CLASS. Returns the class names.
    /// </summary>
    public static string[] CopySplit(string dir, int classes, int train, int test)
    {
        var names = ClassNames(classes);
        foreach (var (part, count) in new[] { ("train", train), ("test", test) })
            foreach (var c in names)
                CopyFirst(Path.Combine(Root, part, c), Path.Combine(dir, part, c), count);
        return names;
    }

    /// <summary>Copies the first <paramref name="perClass"/> training files of the first classes into DIR/CLASS (one folder of classes).</summary>
    public static string[] CopyClassFolders(string dir, int classes, int perClass)
    {
        var names = ClassNames(classes);
        foreach (var c in names) CopyFirst(Path.Combine(Root, "train", c), Path.Combine(dir, c), perClass);
        return names;
    }

    static string[] ClassNames(int count)
    {
        var all = Directory.GetDirectories(Path.Combine(Root, "train")).Select(d => Path.GetFileName(d)!).Order(StringComparer.Ordinal).ToArray();
        if (all.Length < count) throw new InvalidOperationException($"{Root}: {all.Length} classes, a test asked for {count}");
        return all[..count];
    }

    static void CopyFirst(string from, string to, int count)
    {
        var files = Directory.GetFiles(from).Order(StringComparer.Ordinal).Take(count).ToArray();
        if (files.Length < count) throw new InvalidOperationException($"{from}: {files.Length} files, a test asked for {count}");
        Directory.CreateDirectory(to);
        foreach (var f in files) File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
    }
}
