using System.CommandLine;
using Spectre.Console;
using Tp7.Engine.Devices;

namespace Tp7.Cli.Commands;

/// <summary>`tp7 devices`: every device found, and for each one ILGPU refuses, the reason.</summary>
static class DevicesCommand
{
    public static Command Create()
    {
        var command = new Command("devices", "List the devices tp7 can compute on (and those it cannot, with the reason)");
        command.SetHandler(_ =>
        {
            var table = new Table().AddColumn("--device").AddColumn("index").AddColumn("name")
                .AddColumn(new TableColumn("memory").RightAligned()).AddColumn("capability").AddColumn("status");
            foreach (var d in DeviceCatalog.List())
                table.AddRow(Markup.Escape(d.Backend), d.Index.ToString(), Markup.Escape(d.Name),
                    d.MemoryBytes > 0 ? $"{d.MemoryBytes / (1L << 20):N0} MiB" : "",
                    Markup.Escape(d.Capability),
                    d.RefusedBecause is { } why ? $"[red]refused:[/] {Markup.Escape(why)}" : "[green]usable[/]");
            AnsiConsole.Write(table);
            return 0;
        });
        return command;
    }
}
