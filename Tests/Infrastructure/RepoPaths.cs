using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;

namespace Tp7.Tests.Infrastructure;

/// <summary>Where the repository, its tools and the test cache (outside the repository) are.</summary>
public static class RepoPaths
{
    public static string Root { get; } = FindRoot();
    public static string Tools => Path.Combine(Root, "tools");

    /// <summary>Generated fixtures (weights, reference activations) live here, never in the repository.</summary>
    public static string Cache { get; } = CreateCache();

    public static readonly string SklearnImages = "/usr/lib/python3/dist-packages/sklearn/datasets/images";

    static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Tp7.Native.sln"))) return dir.FullName;
        throw new InvalidOperationException("cannot find the repository root (Tp7.Native.sln) above the test binaries");
    }

    static string CreateCache()
    {
        var dir = Environment.GetEnvironmentVariable("TP7_TEST_CACHE") is { Length: > 0 } env
            ? env
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "tp7-tests");
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>A short hash of tool scripts, so a changed script regenerates its cached outputs.</summary>
    public static string ScriptsHash(params string[] scripts)
    {
        using var sha = SHA256.Create();
        var all = new StringBuilder();
        foreach (var s in scripts) all.Append(File.ReadAllText(Path.Combine(Tools, s)));
        return Convert.ToHexString(sha.ComputeHash(Encoding.UTF8.GetBytes(all.ToString())))[..10].ToLowerInvariant();
    }
}

/// <summary>Runs Debian's Python (the reference stack: PyTorch, scikit-learn, PIL) on a tools/ script.</summary>
public static class Python
{
    public const string Interpreter = "/usr/bin/python3";

    public static string Run(string script, params string[] args) => RunWithTimeout(TimeSpan.FromMinutes(10), script, args);

    public static string RunWithTimeout(TimeSpan timeout, string script, params string[] args)
    {
        if (!File.Exists(Interpreter))
            throw new InvalidOperationException($"{Interpreter} is missing: install the reference stack (bash tools/test.sh does)");
        var psi = new ProcessStartInfo(Interpreter) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = RepoPaths.Root };
        psi.ArgumentList.Add(Path.Combine(RepoPaths.Tools, script));
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{script} {string.Join(' ', args)}: still running after {timeout}");
        }
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"{script} {string.Join(' ', args)} exited {p.ExitCode}: {stderr.Result.Trim()}");
        return stdout.Result;
    }

    /// <summary>Produces <paramref name="path"/> once by running a script (which must write it atomically).</summary>
    public static string Cached(string path, string script, params string[] args)
    {
        using var mutex = new Mutex(false, "tp7-tests-" + Path.GetFileName(path).Replace('/', '_'));
        mutex.WaitOne();
        try
        {
            if (!File.Exists(path)) Run(script, args);
            if (!File.Exists(path)) throw new InvalidOperationException($"{script} did not write {path}");
            return path;
        }
        finally { mutex.ReleaseMutex(); }
    }
}
