from kodev.cli import main
from kodev.cli.runner import exit_process

exit_process(main())
